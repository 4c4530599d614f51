fn main() -> std::process::ExitCode {
    pod_utils::exit_code(entrypoint::uumain(pod_utils::args()))
}
