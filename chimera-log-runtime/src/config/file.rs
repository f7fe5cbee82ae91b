//! `LogConfig` read from a configuration file: its `serde::Deserialize`. The keys are the
//! environment variables' names without `CHIMERA_LOG_`, lowercased (`level`, `dir`,
//! `max_bytes`, ...; the table is `SETTINGS`), and each value goes through the same code as the
//! variable's, so a file and the environment accept the same text and refuse it alike; errors
//! name the key. Levels from a file are set as code sets them: the environment, applied after
//! with `LogConfig::with_env`, wins over them.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

use super::log_config::{LogConfig, Source, SETTINGS};
use crate::error::Error;

impl<'de> Deserialize<'de> for LogConfig {
    /// A map of settings (a TOML table, a JSON object, ...) keyed by the environment variables'
    /// names without `CHIMERA_LOG_`, lowercased (`level`, `dir`, `max_bytes`, ...); a key not
    /// among them is an error naming it. Values are strings, booleans or non-negative integers,
    /// read as the environment variable's text is. See docs/configuration.md.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(SettingsVisitor)
    }
}

struct SettingsVisitor;

impl<'de> Visitor<'de> for SettingsVisitor {
    type Value = LogConfig;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a table of chimera-log settings")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LogConfig, A::Error> {
        // Gathered first, so that a later key's value cannot depend on the order of the file.
        let mut given = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            let Some(&(variable, key)) = SETTINGS.iter().find(|(_, known)| *known == key) else {
                let known: Vec<&str> = SETTINGS.iter().map(|(_, key)| *key).collect();
                return Err(de::Error::custom(format_args!(
                    "unknown chimera-log setting `{key}`; known: {}",
                    known.join(", ")
                )));
            };
            let value: SettingText = map.next_value()?;
            if given.insert(variable, (key, value.0)).is_some() {
                return Err(de::Error::custom(format_args!("chimera-log setting `{key}` is given twice")));
            }
        }
        let mut config = LogConfig::new("logs");
        for (variable, (key, text)) in given {
            config = config
                .apply_setting(variable, &text, Source::File)
                .map_err(|error| de::Error::custom(named_by_key(error, variable, key)))?;
        }
        config.settings_complete().map_err(|error| {
            de::Error::custom(named_by_key(error, "CHIMERA_LOG_ARCHIVE_SIGNING_KEY", "archive_signing_key"))
        })
    }
}

/// `error` with the key of the file where it names the variable.
fn named_by_key(error: Error, variable: &'static str, key: &'static str) -> Error {
    match error {
        Error::InvalidSetting { setting, value, reason } if setting == variable => {
            Error::InvalidSetting { setting: key, value, reason }
        }
        other => other,
    }
}

/// A setting's value as the text its environment variable would hold.
struct SettingText(String);

impl<'de> Deserialize<'de> for SettingText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;

        impl Visitor<'_> for TextVisitor {
            type Value = SettingText;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, a boolean or an integer")
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<SettingText, E> {
                Ok(SettingText(value.to_owned()))
            }

            fn visit_bool<E: de::Error>(self, value: bool) -> Result<SettingText, E> {
                Ok(SettingText(value.to_string()))
            }

            fn visit_u64<E: de::Error>(self, value: u64) -> Result<SettingText, E> {
                Ok(SettingText(value.to_string()))
            }

            // Refused by the setting, with its name: "expected a non-negative integer".
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<SettingText, E> {
                Ok(SettingText(value.to_string()))
            }
        }

        deserializer.deserialize_any(TextVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Level;
    use crate::levels::Threshold;

    /// The TOML example of docs/configuration.md, exactly as the page shows it.
    fn documented_example() -> &'static str {
        let page = include_str!("../../../docs/configuration.md");
        let start = page.find("```toml\n").expect("the page has a TOML example") + "```toml\n".len();
        let end = start + page[start..].find("```").expect("the example is closed");
        &page[start..end]
    }

    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct ServiceConfig {
        service: toml::Table,
        logging: LogConfig,
    }

    #[test]
    fn the_documented_toml_example_parses_into_the_settings_it_names() {
        let config: ServiceConfig = toml::from_str(documented_example()).unwrap();
        let config = config.logging;
        assert_eq!(config.log_dir(), std::path::Path::new("/var/log/chimera"));
        let levels = config.effective_levels();
        assert_eq!(levels.level_for("executor"), Threshold::at(Level::Info));
        assert_eq!(levels.level_for("hyper::client"), Threshold::at(Level::Warning));
        assert_eq!(levels.level_for("tower"), Threshold::OFF);
        assert_eq!(levels.level_for("state_engine"), Threshold::at(Level::Trace));
        assert_eq!(
            (config.effective_console_level(), config.effective_cloudwatch_level()),
            (Level::Warning, Level::Warning)
        );
        assert!(config.console && config.compress && config.capture);
        assert_eq!((config.max_bytes, config.general_backups, config.audit_backups), (104_857_600, 10, 50));
        assert_eq!(config.audit_store, crate::AuditStore::sqlite("/var/lib/chimera/audit.db"));
    }

    #[test]
    fn an_unknown_key_is_an_error_naming_it() {
        let error = toml::from_str::<LogConfig>("levle = \"info\"").err().unwrap().to_string();
        assert!(
            error.contains("unknown chimera-log setting `levle`") && error.contains("known: dir, level"),
            "{error}"
        );
    }

    #[test]
    fn a_bad_value_in_a_file_is_an_error_naming_its_key() {
        for (text, key) in [
            ("max_bytes = -1", "`max_bytes`"),
            ("console = \"maybe\"", "`console`"),
            ("level = \"info,tower[request]=debug\"", "`level`"),
            ("console_level = \"off\"", "`console_level`"),
            ("console = [1]", "console"),
        ] {
            let error = toml::from_str::<LogConfig>(text).err().unwrap().to_string();
            assert!(error.contains(key), "{text}: {error}");
        }
    }

    #[test]
    fn the_environment_wins_over_the_file_and_builder_calls_replace_the_files_values() {
        let file = "level = \"warning,hyper=debug,noisy=error\"\nconsole_level = \"info\"\nmax_bytes = 1000";
        let config = toml::from_str::<LogConfig>(file)
            .unwrap()
            .apply_env([("CHIMERA_LOG_LEVEL", "hyper=info"), ("CHIMERA_LOG_MAX_BYTES", "2000")])
            .unwrap();
        let levels = config.effective_levels();
        assert_eq!(levels.level_for("executor"), Threshold::at(Level::Warning), "the file's default");
        assert_eq!(levels.level_for("hyper"), Threshold::at(Level::Info), "the environment's hyper");
        assert_eq!(levels.level_for("noisy"), Threshold::at(Level::Error), "the file's noisy");
        assert_eq!(config.max_bytes, 2000, "the environment's");
        let config = config.level(Level::Debug).console_level(Level::Error);
        assert_eq!(config.effective_levels().level_for("executor"), Threshold::at(Level::Debug));
        assert_eq!(config.effective_levels().level_for("hyper"), Threshold::at(Level::Info), "still the environment's");
        assert_eq!(config.effective_console_level(), Level::Error, "the file's, replaced in code");
    }

    #[test]
    fn every_key_is_its_variables_name_without_the_prefix_lowercased() {
        for (variable, key) in SETTINGS {
            assert_eq!(variable.strip_prefix("CHIMERA_LOG_").map(str::to_ascii_lowercase).as_deref(), Some(key));
        }
    }

    #[test]
    fn a_bad_value_is_an_error_naming_the_key_not_the_variable() {
        let error =
            named_by_key(Error::invalid("CHIMERA_LOG_MAX_BYTES", "-1", "no"), "CHIMERA_LOG_MAX_BYTES", "max_bytes");
        assert!(matches!(error, Error::InvalidSetting { setting: "max_bytes", .. }), "{error}");
    }
}
