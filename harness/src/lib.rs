/*!
tetrapod's emulation lab, as a pipeline anyone can follow, one module per step:
build ([`build`], with [`toolchain`] and the arch table in [`target`]) -> decorate the pod
([`pod`], from a [`fixture`]) -> run it ([`backend`]: one [`backend::lifecycle`], any
backend; [`runner`], [`probe`]) -> observe ([`observe`]) -> normalise ([`normalise`]) -> render
([`render`]) -> compare ([`compare`]) -> report ([`report`], [`triage`]). [`cases`] chains the
steps for one case; [`matrix`] runs every case on every arch. [`image`] packages the built binaries as OCI images.
*/

pub mod backend;
pub mod build;
pub mod cases;
pub mod compare;
pub mod debug;
pub mod exit;
pub mod fixture;
pub mod git;
pub mod image;
pub mod matrix;
pub mod normalise;
pub mod observe;
pub mod pitfalls;
pub mod pod;
pub mod probe;
pub mod render;
pub mod report;
pub mod runner;
pub use tetrapod_arch as target;
pub mod toolchain;
pub mod triage;
pub mod utility;
