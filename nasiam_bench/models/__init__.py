"""What is trained: timm backbones, the activations (the searched heads' candidate ops), the heads (standard MLPs,
supernets, genotypes) and the SSL frameworks with their losses, assembled by ``build.build_model``."""
