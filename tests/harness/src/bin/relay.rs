//! `relay TARGET_PORT [DELAY_US]`: the harness's [`Relay`] as a process, for the benchmark:
//! relays a free port of 127.0.0.1 to `TARGET_PORT` on 127.0.0.1, every byte `DELAY_US`
//! microseconds late each way (0 by default), until killed. Prints `listening on PORT`.

use std::time::Duration;

use session_harness::{relay::Fault, Relay};

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: relay TARGET_PORT [DELAY_US]";
    let target: u16 = args
        .next()
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("{usage}"));
    let delay_us: u64 = args
        .next()
        .map(|us| us.parse().unwrap_or_else(|_| panic!("{usage}")))
        .unwrap_or(0);
    let fault = match delay_us {
        0 => Fault::None,
        us => Fault::Delay(Duration::from_micros(us)),
    };
    let relay = Relay::start_with(target, fault);
    println!("listening on {}", relay.port());
    loop {
        std::thread::park();
    }
}
