//! `iptables-save` output, read only where rbox must see what the kernel has (repair).

/// What `iptables-save` reported for one table: declared chains and rule lines, in kernel
/// order (port publishing looks for stale rules in that order).
#[derive(Default)]
pub struct Table {
    pub chains: Vec<String>,
    pub rules: Vec<String>,
}

impl Table {
    pub fn parse(text: &str, table: &str) -> Table {
        let mut t = Table::default();
        let mut inside = false;
        for line in text.lines() {
            if let Some(name) = line.strip_prefix('*') {
                inside = name == table;
            } else if !inside {
            } else if let Some(decl) = line.strip_prefix(':') {
                t.chains
                    .push(decl.split(' ').next().unwrap_or_default().to_string());
            } else if line.starts_with("-A ") {
                t.rules.push(line.to_string());
            }
        }
        t
    }

    pub fn has_chain(&self, c: &str) -> bool {
        self.chains.iter().any(|x| x == c)
    }

    pub fn has_rule(&self, r: &str) -> bool {
        self.rules.iter().any(|x| x == r)
    }
}
