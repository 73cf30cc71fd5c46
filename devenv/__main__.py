from devenv.preload import main

main()
