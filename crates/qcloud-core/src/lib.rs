//! qcloud-core
