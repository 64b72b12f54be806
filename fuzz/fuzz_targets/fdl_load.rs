//! The FDL loader on arbitrary bytes: it must return a report (valid or not), never panic, and
//! stay within its budgets.
#![no_main]

use std::path::Path;

use fogd_fdl::{graph, load_bytes, LoadOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let r = load_bytes(data, Path::new("fuzz.yaml"), LoadOptions { schema_only: true, ..Default::default() });
    // Every error names the file; a workflow that loads can always be graphed and printed.
    for d in &r.diagnostics {
        assert!(d.to_string().contains("fuzz.yaml"));
    }
    if let Some(wf) = &r.workflow {
        let g = graph::build(wf);
        let _ = (g.to_text(), g.to_mermaid(), g.to_dot());
    }
});
