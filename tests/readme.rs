//! The README's node configuration files are ones a node accepts: each
//! `toml` block that configures a node parses into a valid configuration.

use shoal::server::config::NodeConfig;

/// The text of every fenced block of `language` in `markdown`.
fn blocks<'a>(markdown: &'a str, language: &str) -> Vec<&'a str> {
    let fence = format!("```{language}\n");
    markdown
        .split(&fence)
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap_or_default())
        .collect()
}

#[test]
fn every_node_configuration_in_the_readme_is_accepted() {
    let readme = include_str!("../README.md");
    let configs: Vec<&str> = blocks(readme, "toml")
        .into_iter()
        .filter(|block| block.contains("listen = "))
        .collect();
    assert!(configs.len() >= 2, "the README shows node configurations");
    for block in configs {
        let table: toml::Table = block.parse().unwrap_or_else(|e| panic!("{e}\n{block}"));
        if let Err(e) = NodeConfig::from_table(table) {
            panic!("the README's configuration is refused: {e}\n{block}");
        }
    }
}
