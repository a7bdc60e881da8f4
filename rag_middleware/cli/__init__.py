"""CLI."""
def main(): pass
