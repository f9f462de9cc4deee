fn main() -> std::process::ExitCode {
    shoal_loadtest::cli::main()
}
