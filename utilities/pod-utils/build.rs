//! Tells the integration tests which storage servers this machine has (see `tetrapod-tools`).
fn main() {
    use tetrapod_tools::Tool;
    tetrapod_tools::emit(&[Tool::FakeGcs, Tool::Moto]);
}
