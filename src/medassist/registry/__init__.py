from medassist.registry.bundle import ModelBundle, check_out_dir, load_bundle, save_bundle

__all__ = ["ModelBundle", "check_out_dir", "load_bundle", "save_bundle"]
