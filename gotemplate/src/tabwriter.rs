//! Go's `text/tabwriter` (flags 0, padding character ' '), which Docker's `table` formats
//! go through: tab-terminated cells form columns over consecutive lines, each as wide as its
//! widest cell plus `padding` and at least `minwidth`; a line's last cell is not in a column
//! and is not padded.

/// Aligns `text` as `tabwriter.NewWriter(out, minwidth, 1, padding, ' ', 0)` would.
pub fn align(text: &str, minwidth: usize, padding: usize) -> String {
    let lines: Vec<Vec<&str>> = text.split('\n').map(|l| l.split('\t').collect()).collect();
    let mut w = Writer {
        lines: &lines,
        minwidth,
        padding,
        out: String::with_capacity(text.len() * 2),
    };
    w.format(&mut Vec::new(), 0, lines.len());
    w.out
}

struct Writer<'a> {
    lines: &'a [Vec<&'a str>],
    minwidth: usize,
    padding: usize,
    out: String,
}

impl Writer<'_> {
    /// Go's `Writer.format`: the column `widths.len()` over lines `line0..line1`.
    fn format(&mut self, widths: &mut Vec<usize>, mut line0: usize, line1: usize) {
        let column = widths.len();
        let mut this = line0;
        while this < line1 {
            if column + 1 >= self.lines[this].len() {
                this += 1;
                continue;
            }
            self.write_lines(widths, line0, this);
            line0 = this;
            let mut width = self.minwidth;
            while this < line1 && column + 1 < self.lines[this].len() {
                width = width.max(self.lines[this][column].chars().count() + self.padding);
                this += 1;
            }
            widths.push(width);
            self.format(widths, line0, this);
            widths.pop();
            line0 = this;
            // Go's loop steps past the line that ended the block: it has no cell here.
            this += 1;
        }
        self.write_lines(widths, line0, line1);
    }

    fn write_lines(&mut self, widths: &[usize], line0: usize, line1: usize) {
        for i in line0..line1 {
            for (j, cell) in self.lines[i].iter().enumerate() {
                self.out.push_str(cell);
                if let Some(w) = widths.get(j) {
                    let n = cell.chars().count();
                    self.out
                        .extend(std::iter::repeat_n(' ', w.saturating_sub(n)));
                }
            }
            if i + 1 < self.lines.len() {
                self.out.push('\n');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::align;

    #[test]
    fn docker_tables() {
        // Docker's `ps` header alone: minimum width 10, padding 3.
        assert_eq!(
            align(
                "CONTAINER ID\tIMAGE\tCOMMAND\tCREATED\tSTATUS\tPORTS\tNAMES\n",
                10,
                3
            ),
            "CONTAINER ID   IMAGE     COMMAND   CREATED   STATUS    PORTS     NAMES\n"
        );
        assert_eq!(
            align("DRIVER\tVOLUME NAME\nlocal\tdata\n", 10, 3),
            "DRIVER    VOLUME NAME\nlocal     data\n"
        );
        // A trailing tab pads the cell before it; a line with fewer cells ends the column.
        assert_eq!(align("a\tb\t\nxx\n", 1, 1), "a b \nxx\n");
        assert_eq!(align("a\tb\nlong\tc\nz\n", 1, 2), "a     b\nlong  c\nz\n");
    }
}
