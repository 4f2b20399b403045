//! Analysis: an incident through the prompt plugin, the model and the parser
//! plugin to reviewed recommendations and planned HealingActions, and the
//! report `kubeskippy analyze` prints.

pub mod llm;
pub mod pipeline;
pub mod report;
