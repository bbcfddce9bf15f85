//! qcloud-devices
