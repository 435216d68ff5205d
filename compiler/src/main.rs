//! The `hl7gw` command line. See `hl7gw --help`.

fn main() -> std::process::ExitCode {
    hl7gw::cli::main()
}
