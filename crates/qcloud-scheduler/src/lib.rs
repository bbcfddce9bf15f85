//! qcloud-scheduler
