/*!
The upload step shared by initupload and sidecar (upstream `pkg/gcsupload`): [`Options`] and
[`Flags`] say where and how to upload, [`run`] assembles the job's targets and uploads them.
*/

mod options;
mod run;

pub use options::{FLAG_NAMES, FlagError, Flags, Options, OptionsError};
pub use run::{
    AssembleError, JobPaths, Substitute, Substitutes, UploadError, UploadSource, assemble_targets,
    paths_for_job, run, run_with,
};
