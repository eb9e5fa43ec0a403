from panelctl.cli import main

main()
