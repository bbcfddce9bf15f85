//! qcloud-store
