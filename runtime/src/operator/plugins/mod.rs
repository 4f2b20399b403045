//! Plugins delivered through the API: ConfigMaps labelled
//! `kubeskippy.io/plugin` are watched, put back together, checked and swapped
//! into the analyzer's catalog while the daemon runs.

pub mod package;
pub mod watch;
