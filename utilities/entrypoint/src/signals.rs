/*!
SIGINT/SIGTERM delivery to the run loop, and Go's names for signals (`syscall.Signal.String()`)
as they appear in upstream's log lines and error texts.
*/

use std::io;
use std::sync::mpsc::Sender;
use std::thread;

use nix::sys::signal::Signal;

use crate::supervise::Event;

/// Hands SIGINT/SIGTERM to a thread that forwards them as events. The handlers stay installed
/// after the run, so later signals are not fatal, as upstream's `signal.Notify` stays
/// registered. Installing handlers (rather than blocking the signals) matters for the child:
/// exec resets caught signals to their defaults, while a blocked mask or an inherited SIG_IGN
/// would be passed on and make the child deaf to our SIGINT.
pub(crate) fn register_signals(tx: Sender<Event>) -> io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])?;
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for raw in signals.forever() {
                if let Ok(sig) = Signal::try_from(raw) {
                    // Once the run is over nobody listens; the signal is swallowed.
                    let _ = tx.send(Event::Interrupt(sig));
                }
            }
        })?;
    Ok(())
}

/// Go's `syscall.Signal.String()` for the signals a child commonly dies of.
pub(crate) fn go_signal_name(s: Signal) -> &'static str {
    match s {
        Signal::SIGINT => "interrupt",
        Signal::SIGTERM => "terminated",
        Signal::SIGKILL => "killed",
        Signal::SIGHUP => "hangup",
        Signal::SIGQUIT => "quit",
        Signal::SIGABRT => "aborted",
        Signal::SIGSEGV => "segmentation fault",
        Signal::SIGBUS => "bus error",
        Signal::SIGFPE => "floating point exception",
        Signal::SIGILL => "illegal instruction",
        Signal::SIGPIPE => "broken pipe",
        Signal::SIGUSR1 => "user defined signal 1",
        Signal::SIGUSR2 => "user defined signal 2",
        Signal::SIGALRM => "alarm clock",
        other => other.as_str(),
    }
}
