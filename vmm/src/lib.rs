//! cvmprobe's built-in KVM VMM (work in progress).
