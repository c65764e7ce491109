# Sourced by the image recipes: what every rootfs recipe does the same way.
# Expects $R (the rootfs being built), $WORK, $OUT, $WS and $IMPORT to be set.

# copy_binary SRC DEST: SRC at $R/DEST, with the shared libraries (and the dynamic loader) `ldd`
# names at the paths the binary looks for them.
copy_binary() {
    cp "$1" "$R$2"
    for lib in $(ldd "$1" | awk '/=> \//{print $3} /^[[:space:]]*\//{print $1}'); do
        mkdir -p "$R$(dirname "$lib")"
        cp -L "$lib" "$R$lib"
    done
    # Debian is merged-/usr: /lib and /lib64 are links into /usr.
    for d in lib lib64; do
        if [ -L "/$d" ] && [ -d "$R/$d" ] && [ ! -L "$R/$d" ]; then
            mkdir -p "$R/usr/$d"
            cp -a "$R/$d/." "$R/usr/$d/"
            rm -rf "${R:?}/$d"
            ln -s "usr/$d" "$R/$d"
        fi
    done
}

# finish NAME [--change C]...: $R as a reproducible tarball $OUT/NAME.tar (same input, same
# bytes, so the layer digest and its store directory are shared), imported as NAME:latest with
# the given --change values when $IMPORT is set.
finish() {
    name=$1
    shift
    chmod 1777 "$R/tmp"
    chmod 700 "$R/root"
    tar --sort=name --numeric-owner --owner=0 --group=0 --mtime=@0 -C "$R" -cf "$WORK/$name.tar" .
    mv "$WORK/$name.tar" "$OUT/$name.tar"
    echo "$OUT/$name.tar"
    if [ -n "$IMPORT" ]; then
        RBOX=${RBOX:-$WS/target/debug/rbox}
        "$RBOX" import "$@" "$OUT/$name.tar" "$name:latest"
    fi
}
