//! `exec` probes: run an operator's command per backend. Placeholder: being written.
