/*!
The four pod utilities as a type: what the lab builds, puts in images and pods, and probes. Each
knows its binary's name, the env var Prow's decorate step puts its JSON options in, and where its
image keeps the binary (`/ko-app/<name>`, as upstream's ko-built images do).
*/

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Utility {
    Clonerefs,
    Initupload,
    Entrypoint,
    Sidecar,
}

/// In the order a decorated pod starts them.
pub const ALL: [Utility; 4] = [
    Utility::Clonerefs,
    Utility::Initupload,
    Utility::Entrypoint,
    Utility::Sidecar,
];

impl Utility {
    /// The binary, crate and container name.
    pub fn name(self) -> &'static str {
        match self {
            Utility::Clonerefs => "clonerefs",
            Utility::Initupload => "initupload",
            Utility::Entrypoint => "entrypoint",
            Utility::Sidecar => "sidecar",
        }
    }

    /// The env var holding its JSON options.
    pub fn options_var(self) -> &'static str {
        match self {
            Utility::Clonerefs => "CLONEREFS_OPTIONS",
            Utility::Initupload => "INITUPLOAD_OPTIONS",
            Utility::Entrypoint => "ENTRYPOINT_OPTIONS",
            Utility::Sidecar => "SIDECAR_OPTIONS",
        }
    }

    /// Where its image keeps the binary.
    pub fn image_path(self) -> String {
        format!("/ko-app/{}", self.name())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown utility {0:?}: expected clonerefs, initupload, entrypoint or sidecar")]
pub struct UnknownUtility(String);

impl std::str::FromStr for Utility {
    type Err = UnknownUtility;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ALL.into_iter()
            .find(|u| u.name() == s)
            .ok_or_else(|| UnknownUtility(s.to_string()))
    }
}

impl fmt::Display for Utility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_vars_and_paths_follow_upstream() {
        assert!("clonerefs2".parse::<Utility>().is_err());
        for u in ALL {
            assert_eq!(u.name().parse::<Utility>().unwrap(), u);
            assert_eq!(
                u.options_var(),
                format!("{}_OPTIONS", u.name().to_uppercase())
            );
            assert_eq!(u.image_path(), format!("/ko-app/{u}"));
        }
    }

    #[test]
    fn the_lab_builds_every_utility_and_the_fixture_job() {
        let mut want: Vec<&str> = ALL.iter().map(|u| u.name()).collect();
        want.push("fixture-job");
        assert_eq!(crate::build::LAB_PROGRAMS, &want[..]);
    }
}
