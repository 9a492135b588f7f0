//! `bench_server` under mimalloc instead of the system allocator: the allocator knob of the
//! memory figures (`run.sh`, "Idle memory"). Same flags as `bench_server`.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "bench_server.rs"]
mod server;

fn main() {
    server::main();
}
