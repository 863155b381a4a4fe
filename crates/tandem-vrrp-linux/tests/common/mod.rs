#![allow(dead_code)] // each test binary uses its own part

pub mod keepalived;
pub mod lab;
