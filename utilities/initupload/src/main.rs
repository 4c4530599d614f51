fn main() -> std::process::ExitCode {
    pod_utils::exit_code(initupload::uumain(pod_utils::args()))
}
