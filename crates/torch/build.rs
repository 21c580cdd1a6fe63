//! Build script: with the `libtorch` feature, puts libtorch's lib dir on the rpath of this
//! package's tests, examples and benches, and keeps libtorch_cuda.so linked when it exists (the
//! linker's --as-needed would drop it, since no symbol of it is referenced, and CUDA would then
//! be invisible to tch). Dependents' build scripts get the lib dir as
//! DEP_ATTN_SPECTRA_TORCH_LIBTORCH_LIB to do the same for their binaries.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_LIBTORCH").is_none() {
        return;
    }
    // torch-sys (links = "tch") publishes the directory it linked against.
    let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB").map(PathBuf::from) else {
        println!("cargo:warning=torch-sys did not report its libtorch lib dir");
        return;
    };
    let lib_s = lib.display();
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_s}");
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-L{lib_s}");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
    println!("cargo:rustc-env=ATTN_SPECTRA_LIBTORCH_LIB={lib_s}");
    println!("cargo:libtorch_lib={lib_s}");
}
