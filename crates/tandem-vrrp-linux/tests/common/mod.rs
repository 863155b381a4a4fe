pub mod keepalived;
