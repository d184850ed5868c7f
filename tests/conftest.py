import sys
from pathlib import Path

# Lets tests `import oracle` whether or not tests/ becomes a package.
sys.path.insert(0, str(Path(__file__).parent))
