/*!
The matrix report: a table with one cell per (probe, arch), printed and written as markdown under
`target/lab/report/`, with the toolchain record and timings of the run.
*/

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use crate::target::Arch;
use crate::toolchain::Toolchain;

/// One cell: did this arch match the golden, and how long it took.
#[derive(Debug, Clone)]
pub struct Cell {
    pub arch: Arch,
    pub row: String,
    pub elapsed: Duration,
    /// `None` when it matched; otherwise the first difference or the error.
    pub failure: Option<String>,
    /// For a mismatch: the unified diff from the golden to what this arch produced.
    pub diff: Option<String>,
    /// For a failing fixture: exits, crashes, log and trace tails, the reproduce command.
    pub triage: Option<crate::triage::Triage>,
}

pub struct Report<'a> {
    pub toolchain: &'a Toolchain,
    pub emulators: Vec<(Arch, String)>,
    pub arches: Vec<Arch>,
    pub cells: Vec<Cell>,
    pub wall: Duration,
    /// Cells run at once.
    pub jobs: usize,
}

impl Report<'_> {
    pub fn failures(&self) -> usize {
        self.cells.iter().filter(|c| c.failure.is_some()).count()
    }

    /// The table as markdown (also what is printed).
    pub fn markdown(&self) -> String {
        let mut rows: Vec<&str> = self.cells.iter().map(|c| c.row.as_str()).collect();
        rows.dedup();
        let mut s = String::new();
        let _ = writeln!(s, "# tetrapod lab matrix\n");
        let _ = writeln!(
            s,
            "toolchain: {} ({}), {}\n",
            self.toolchain.rustc_version, self.toolchain.mode, self.toolchain.qemu_version
        );
        for (arch, v) in &self.emulators {
            let _ = writeln!(s, "- {arch}: {v}");
        }
        let _ = write!(s, "\n| case |");
        for a in &self.arches {
            let _ = write!(s, " {a} |");
        }
        let _ = write!(s, "\n|---|");
        for _ in &self.arches {
            let _ = write!(s, "---|");
        }
        s.push('\n');
        for row in &rows {
            let _ = write!(s, "| {row} |");
            for a in &self.arches {
                let cell = self.cells.iter().find(|c| c.row == *row && c.arch == *a);
                let mark = match cell {
                    Some(c) if c.failure.is_none() => format!("✓ {}ms", c.elapsed.as_millis()),
                    Some(c) => format!("✗ {}ms", c.elapsed.as_millis()),
                    None => "-".into(),
                };
                let _ = write!(s, " {mark} |");
            }
            s.push('\n');
        }
        let _ = writeln!(s, "\nper-arch time (sum of cells):");
        let amd64: Duration = self.arch_total(Arch::Amd64);
        for a in &self.arches {
            let t = self.arch_total(*a);
            // A ratio needs amd64 in the same run: figures from separate runs on this noisy
            // machine do not compare.
            let ratio = if amd64.is_zero() {
                "amd64 not run".to_string()
            } else {
                format!("{:.2}x amd64", t.as_secs_f64() / amd64.as_secs_f64())
            };
            let _ = writeln!(s, "- {a}: {} ms ({ratio})", t.as_millis());
        }
        let _ = writeln!(
            s,
            "\nwall time: {} ms ({} cells at once)",
            self.wall.as_millis(),
            self.jobs
        );
        let failed: Vec<&Cell> = self.cells.iter().filter(|c| c.failure.is_some()).collect();
        if !failed.is_empty() {
            let _ = writeln!(s, "\n## failures\n");
            for c in &failed {
                let _ = writeln!(
                    s,
                    "- {} on {}: {}",
                    c.row,
                    c.arch,
                    c.failure.as_deref().unwrap_or("")
                );
            }
            for c in &failed {
                let _ = writeln!(s, "\n### {} on {}\n", c.row, c.arch);
                let _ = writeln!(s, "- failing arches: {}", self.failing_arches(&c.row));
                let _ = writeln!(
                    s,
                    "- first difference: {}",
                    c.failure.as_deref().unwrap_or("")
                );
                if let Some(t) = &c.triage {
                    s.push_str(&t.markdown());
                }
            }
        }
        s
    }

    /// The arches on which `row` failed, e.g. `s390x (arm64, amd64, ppc64le match)`.
    fn failing_arches(&self, row: &str) -> String {
        let (bad, good): (Vec<&Cell>, Vec<&Cell>) = self
            .cells
            .iter()
            .filter(|c| c.row == row)
            .partition(|c| c.failure.is_some());
        let names = |v: &[&Cell]| {
            v.iter()
                .map(|c| c.arch.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        if good.is_empty() {
            format!("{} (every arch run)", names(&bad))
        } else {
            format!("{} ({} match)", names(&bad), names(&good))
        }
    }

    fn arch_total(&self, arch: Arch) -> Duration {
        self.cells
            .iter()
            .filter(|c| c.arch == arch)
            .map(|c| c.elapsed)
            .sum()
    }

    /// A self-contained HTML page: the table, then every failing cell with its diff.
    pub fn html(&self) -> String {
        let mut s = String::from(
            "<!doctype html><meta charset=utf-8><title>tetrapod lab matrix</title>\n<style>\
             body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}\
             .ok{color:#070}.bad{color:#b00;font-weight:bold}pre{background:#f6f6f6;padding:6px;overflow:auto}\
             .add{color:#070}.del{color:#b00}</style>\n",
        );
        let _ = writeln!(
            s,
            "<h1>tetrapod lab matrix</h1><p>{}</p>",
            esc(&format!(
                "toolchain: {} ({}), {}; wall time {} ms ({} cells at once)",
                self.toolchain.rustc_version,
                self.toolchain.mode,
                self.toolchain.qemu_version,
                self.wall.as_millis(),
                self.jobs
            ))
        );
        let mut rows: Vec<&str> = self.cells.iter().map(|c| c.row.as_str()).collect();
        rows.dedup();
        s.push_str("<table><tr><th>case</th>");
        for a in &self.arches {
            let _ = write!(s, "<th>{a}</th>");
        }
        s.push_str("</tr>\n");
        for row in &rows {
            let _ = write!(s, "<tr><td>{}</td>", esc(row));
            for a in &self.arches {
                match self.cells.iter().find(|c| c.row == *row && c.arch == *a) {
                    Some(c) if c.failure.is_none() => {
                        let _ = write!(s, "<td class=ok>✓ {} ms</td>", c.elapsed.as_millis());
                    }
                    Some(c) => {
                        let _ = write!(
                            s,
                            "<td class=bad><a href=\"#{}-{}\">✗</a> {} ms</td>",
                            esc(row),
                            a,
                            c.elapsed.as_millis()
                        );
                    }
                    None => s.push_str("<td>-</td>"),
                }
            }
            s.push_str("</tr>\n");
        }
        s.push_str("</table>\n");
        for c in self.cells.iter().filter(|c| c.failure.is_some()) {
            let _ = writeln!(
                s,
                "<h2 id=\"{}-{}\">{} on {}</h2><p>{}</p>",
                esc(&c.row),
                c.arch,
                esc(&c.row),
                c.arch,
                esc(c.failure.as_deref().unwrap_or(""))
            );
            if let Some(t) = &c.triage {
                let _ = writeln!(s, "<pre>{}</pre>", esc(&t.markdown()));
            }
            if let Some(d) = &c.diff {
                s.push_str("<pre>");
                for line in d.lines() {
                    let class = match line.chars().next() {
                        Some('+') => "add",
                        Some('-') => "del",
                        _ => "",
                    };
                    let _ = writeln!(s, "<span class=\"{class}\">{}</span>", esc(line));
                }
                s.push_str("</pre>\n");
            }
        }
        s
    }

    /// Writes `target/lab/report/matrix.md` and `matrix.html`; returns the folder.
    pub fn write(&self) -> std::io::Result<PathBuf> {
        let dir = crate::build::lab_dir().join("report");
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("matrix.md"), self.markdown())?;
        std::fs::write(dir.join("matrix.html"), self.html())?;
        Ok(dir)
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
