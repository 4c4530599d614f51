fn main() -> std::process::ExitCode {
    pod_utils::exit_code(clonerefs::uumain(pod_utils::args()))
}
