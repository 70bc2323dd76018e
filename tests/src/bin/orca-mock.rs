//! `orca-mock`: the example services the demo runs against.
//!
//! Binds `127.0.0.1:0` (or `--port N`), prints one line `listening on http://127.0.0.1:PORT`
//! on stdout, serves until SIGTERM or ctrl-c. `--verbose` logs each request to stderr.

use std::io::Write;
use std::process::ExitCode;

const USAGE: &str = "usage: orca-mock [--port N] [--verbose]";

fn main() -> ExitCode {
    let mut port: u16 = 0;
    let mut verbose = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => match args.next().map(|p| p.parse()) {
                Some(Ok(p)) => port = p,
                _ => {
                    eprintln!("error: --port needs a number from 0 to 65535\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            "--verbose" | "-v" => verbose = true,
            "--help" | "-h" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("error: unexpected argument `{other}`\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(serve(port, verbose)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

async fn serve(port: u16, verbose: bool) -> std::io::Result<()> {
    // Install the signal handlers before announcing the port: whoever reads the line may send
    // SIGTERM at once, and an uninstalled handler would let the default action kill us.
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    #[cfg(not(unix))]
    let term = ();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{addr}")?;
        out.flush()?;
    }
    axum::serve(listener, orca_e2e::demo_router(verbose))
        .with_graceful_shutdown(shutdown(term))
        .await
}

/// Resolves on SIGTERM or ctrl-c (SIGINT).
#[cfg(unix)]
async fn shutdown(mut term: tokio::signal::unix::Signal) {
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(not(unix))]
async fn shutdown(_term: ()) {
    let _ = tokio::signal::ctrl_c().await;
}
