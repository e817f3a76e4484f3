//! Plain-text tables and JSON for the admin commands (`variables`, `connections`, `pools`).

/// How a list is printed: `table` (default), `json` or `plain` (tab-separated, no header).
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Output {
    #[default]
    Table,
    Json,
    Plain,
}

/// Prints `rows` under `headers` in the chosen form (JSON: a list of objects).
pub fn print(output: Output, headers: &[&str], rows: &[Vec<String>]) {
    match output {
        Output::Json => {
            let list: Vec<serde_json::Value> = rows
                .iter()
                .map(|r| {
                    headers
                        .iter()
                        .zip(r)
                        .map(|(h, v)| (h.to_string(), serde_json::Value::String(v.clone())))
                        .collect::<serde_json::Map<_, _>>()
                        .into()
                })
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&list).unwrap_or_default()
            );
        }
        Output::Plain => {
            for r in rows {
                println!("{}", r.join("\t"));
            }
        }
        Output::Table => {
            let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
            for r in rows {
                for (w, v) in widths.iter_mut().zip(r) {
                    *w = (*w).max(v.chars().count()).min(60);
                }
            }
            let line = |cells: Vec<&str>| {
                let parts: Vec<String> = cells
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect();
                println!("{}", parts.join(" | ").trim_end());
            };
            line(headers.to_vec());
            println!(
                "{}",
                widths
                    .iter()
                    .map(|w| "=".repeat(*w))
                    .collect::<Vec<_>>()
                    .join("=+=")
            );
            for r in rows {
                line(r.iter().map(String::as_str).collect());
            }
        }
    }
}

/// Reads a file, or standard input for `-`.
pub fn read_input(path: &std::path::Path) -> anyhow::Result<String> {
    use anyhow::Context;
    if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
        return Ok(s);
    }
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Writes a file (mode 0600: exports hold secrets), or standard output for `-`.
pub fn write_output(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if path.as_os_str() == "-" {
        print!("{text}");
        return Ok(());
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}
