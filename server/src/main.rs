// jemalloc returns freed memory to the system and fragments less than the system allocator
// under many concurrent connections, so the server's RSS tracks what it really holds.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    shoal::cli::main()
}
