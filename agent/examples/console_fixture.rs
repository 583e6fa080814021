//! Writes the console's test lineage (`rampart::console::fixture`) into DIR/lineage, with the
//! host's public key as DIR/host.pub; `cargo xtask test` serves it with `rampart console`
//! and checks the pages in a headless browser.

fn main() -> anyhow::Result<()> {
    let dir = std::env::args_os()
        .nth(1)
        .map(std::path::PathBuf::from)
        .ok_or_else(|| anyhow::anyhow!("usage: console_fixture DIR"))?;
    let _ = std::fs::remove_dir_all(&dir);
    rampart::console::fixture::write(&dir.join("lineage"))?;
    eprintln!("wrote {}", dir.join("lineage").display());
    Ok(())
}
