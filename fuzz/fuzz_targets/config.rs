//! Config parsing: any text as `keygate.toml` is loaded or refused with a message, never a
//! panic; one that loads prints (`config check`) and loads again the same.
#![no_main]

use keygate::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(config) = Config::parse(text, std::iter::empty()) else { return };
    let printed = toml::to_string(&config).expect("a loaded configuration prints");
    Config::parse(&printed, std::iter::empty()).expect("what config check prints loads again");
});
