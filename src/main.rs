fn main() {
    println!("{}", env!("CVMPROBE_KERNEL_ELF"));
}
