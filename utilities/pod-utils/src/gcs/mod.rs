/*!
Blob storage for the pod utilities (upstream `pkg/pod-utils/gcs` and the parts of `pkg/io` the
utilities use): object paths for a job, object headers from names, and the upload executor over
one storage layer for GCS, S3 and local directories.
*/

mod gcs_json;
pub mod metadata;
pub mod path;
pub mod store;
pub mod target;
pub mod upload;

pub use metadata::{MediaTypes, WriterOptions, detect_content_type, writer_options_from_file_name};
pub use store::{Destination, StoreError, WriteError};
pub use target::{
    RepoPathBuilder, TargetError, alias_for_spec, latest_build_for_spec, path_for_spec,
    root_for_spec,
};
pub use upload::{Source, Targets, Upload, UploadConfig, UploadError, upload};
