use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = updraft::cli::Cli::parse();
    // Settings first: the log filter is one of them. A bad config file stops here, with the
    // file, key and line.
    let settings = match cli.settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let filter = EnvFilter::try_new(&settings.logging.level).unwrap_or_else(|e| {
        eprintln!(
            "warning: ignoring the log filter `{}` ({e}); using `info`",
            settings.logging.level
        );
        EnvFilter::new("info")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        // Logs are diagnostics: stderr, so command output on stdout stays clean to pipe.
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, not in files, pipes or journald.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match updraft::cli::run(cli, settings).await {
        Ok(code) => std::process::ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
