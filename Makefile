.PHONY: deb check-units

# dist/rollcap_<version>_<arch>.deb (Debian 12); VERSION_SUFFIX=+x for test builds
deb:
	packaging/build-deb

check-units:
	packaging/check-units
