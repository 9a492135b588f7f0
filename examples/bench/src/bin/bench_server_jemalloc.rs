//! `bench_server` under jemalloc instead of the system allocator: the allocator knob of the
//! memory figures (`run.sh`, "Idle memory"). Same flags as `bench_server`.

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[path = "bench_server.rs"]
mod server;

fn main() {
    server::main();
}
