//! Tells the tests which engines and servers this machine has (see `tetrapod-tools`).
fn main() {
    use tetrapod_tools::Tool;
    tetrapod_tools::emit(&[Tool::DockerEngine, Tool::DockerRegistry, Tool::Root]);
}
