fn main() -> std::process::ExitCode {
    pod_utils::exit_code(sidecar::uumain(pod_utils::args()))
}
