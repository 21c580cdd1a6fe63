//! Build script of the `pipeline` binary: with the `torch` feature, puts libtorch's lib dir on
//! the binary's rpath (so it runs without LD_LIBRARY_PATH) and keeps `libtorch_cuda.so` linked
//! when it exists; the linker's `--as-needed` would otherwise drop it, since no symbol of it is
//! referenced, and libtorch would then see no GPU. The directory comes from the
//! attn-spectra-torch build script (`links = "attn_spectra_torch"`).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_TORCH").is_none() {
        return;
    }
    let Some(lib) = std::env::var_os("DEP_ATTN_SPECTRA_TORCH_LIBTORCH_LIB") else {
        println!("cargo:warning=attn-spectra-torch did not report the libtorch lib dir");
        return;
    };
    let lib = std::path::PathBuf::from(lib);
    let lib_s = lib.display();
    println!("cargo:rustc-link-arg-bins=-Wl,-rpath,{lib_s}");
    println!("cargo:rustc-link-arg-tests=-Wl,-rpath,{lib_s}");
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg-bins=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg-bins=-L{lib_s}");
        println!("cargo:rustc-link-arg-bins=-ltorch_cuda");
        println!("cargo:rustc-link-arg-bins=-Wl,--as-needed");
    }
}
