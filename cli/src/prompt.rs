//! Docker's confirmation prompt (`command.PromptForConfirmation`): the warning and
//! "Are you sure you want to continue? [y/N] " on stdout, yes only for `y`/`yes`.

use std::io::Write;

pub fn confirm(warning: &str) -> anyhow::Result<bool> {
    print!("{warning}\nAre you sure you want to continue? [y/N] ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let a = line.trim();
    Ok(a.eq_ignore_ascii_case("y") || a.eq_ignore_ascii_case("yes"))
}

/// Prints what a prune removed: `Deleted <what>:`, one line each, and a blank line.
pub fn deleted(what: &str, lines: &[String]) {
    if lines.is_empty() {
        return;
    }
    println!("Deleted {what}:");
    for l in lines {
        println!("{l}");
    }
    println!();
}
