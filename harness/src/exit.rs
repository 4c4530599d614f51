/*!
How a container or probe process ended, as one type every step shares: backends produce it,
observations carry it, goldens print it through its one `Display`.
*/

use std::fmt;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this code.
    Code(i64),
    /// It died from this signal.
    Signal(i32),
    /// An earlier init container failed, so it never ran.
    NotStarted,
    /// The pod's deadline passed and the backend killed it.
    KilledAtDeadline,
}

/// Signals no program exits with on purpose: an exit of 128 + one of them is a death.
const DEATH_SIGNALS: [i64; 8] = [4, 5, 6, 7, 8, 9, 11, 31];

impl Exit {
    /// A child's status as the OS reports it.
    pub fn of(status: &std::process::ExitStatus) -> Exit {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(c), _) => Exit::Code(i64::from(c)),
            (None, Some(s)) => Exit::Signal(s),
            // Neither code nor signal: stopped or continued, which wait() does not report.
            _ => Exit::Code(-1),
        }
    }

    /// A container's exit code as Docker reports it. Docker reports a process killed by signal
    /// N as 128 + N and cannot tell it from `exit(128 + N)`, which programs do use (entrypoint
    /// exits 130 after an interrupt). So 128 + N is `Signal(N)` only when N was sent to the
    /// container by the backend (`sent`) or is a fault or kill signal.
    pub fn from_engine(code: i64, sent: &[i64]) -> Exit {
        let n = code - 128;
        if (1..=64).contains(&n) && (sent.contains(&n) || DEATH_SIGNALS.contains(&n)) {
            Exit::Signal(n as i32)
        } else {
            Exit::Code(code)
        }
    }

    /// Exited 0.
    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "{c}"),
            Exit::Signal(s) => write!(f, "signal {s}"),
            Exit::NotStarted => f.write_str("not started"),
            Exit::KilledAtDeadline => f.write_str("killed at deadline"),
        }
    }
}

impl serde::Serialize for Exit {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_text_per_ending() {
        assert_eq!(Exit::Code(0).to_string(), "0");
        assert_eq!(Exit::Signal(15).to_string(), "signal 15");
        assert_eq!(Exit::NotStarted.to_string(), "not started");
        assert_eq!(Exit::KilledAtDeadline.to_string(), "killed at deadline");
        assert!(Exit::Code(0).success() && !Exit::Code(1).success());
    }

    #[test]
    fn engine_codes_read_as_signals_only_when_sent_or_fatal() {
        let t = |code, sent: &[i64]| Exit::from_engine(code, sent).to_string();
        assert_eq!(t(0, &[]), "0");
        assert_eq!(t(42, &[]), "42");
        // entrypoint's own 130 after an interrupt stays a code unless SIGINT was sent.
        assert_eq!(t(130, &[]), "130");
        assert_eq!(t(130, &[15]), "130");
        assert_eq!(t(143, &[15]), "signal 15");
        assert_eq!(t(143, &[]), "143");
        assert_eq!(t(139, &[]), "signal 11");
        assert_eq!(t(137, &[]), "signal 9");
        assert_eq!(t(134, &[]), "signal 6");
        assert_eq!(t(255, &[]), "255");
        assert_eq!(t(128, &[]), "128");
        assert_eq!(t(-1, &[]), "-1");
    }
}
