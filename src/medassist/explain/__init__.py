from medassist.explain.attributions import group_attributions, integrated_gradients, top_attributions

__all__ = ["group_attributions", "integrated_gradients", "top_attributions"]
