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
}

pub struct Report<'a> {
    pub toolchain: &'a Toolchain,
    pub emulators: Vec<(Arch, String)>,
    pub arches: Vec<Arch>,
    pub cells: Vec<Cell>,
    pub wall: Duration,
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
            let ratio = if amd64.is_zero() {
                0.0
            } else {
                t.as_secs_f64() / amd64.as_secs_f64()
            };
            let _ = writeln!(s, "- {a}: {} ms ({ratio:.2}x amd64)", t.as_millis());
        }
        let _ = writeln!(s, "\nwall time: {} ms", self.wall.as_millis());
        let failed: Vec<&Cell> = self.cells.iter().filter(|c| c.failure.is_some()).collect();
        if !failed.is_empty() {
            let _ = writeln!(s, "\n## failures\n");
            for c in failed {
                let _ = writeln!(
                    s,
                    "- {} on {}: {}",
                    c.row,
                    c.arch,
                    c.failure.as_deref().unwrap_or("")
                );
            }
        }
        s
    }

    fn arch_total(&self, arch: Arch) -> Duration {
        self.cells
            .iter()
            .filter(|c| c.arch == arch)
            .map(|c| c.elapsed)
            .sum()
    }

    /// Writes `target/lab/report/matrix.md` and returns its path.
    pub fn write(&self) -> std::io::Result<PathBuf> {
        let dir = crate::build::lab_dir().join("report");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("matrix.md");
        std::fs::write(&path, self.markdown())?;
        Ok(path)
    }
}
