from medassist.registry.bundle import ModelBundle, check_out_dir, load_bundle, read_bundle_task, save_bundle

__all__ = ["ModelBundle", "check_out_dir", "load_bundle", "read_bundle_task", "save_bundle"]
