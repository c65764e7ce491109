//! The shapes of Docker's types that templates walk (moby `api/types`, Docker 28): which
//! objects of the inspect JSON are Go maps (printed `map[k:v]`, ranged in key order) and
//! which nulls are nil slices (`[]`) or maps (`map[]`) rather than nil pointers (`<nil>`).

use gotemplate::Schema;

/// `container inspect` (`types.ContainerJSON`).
pub static CONTAINER: Schema = Schema {
    type_name: None,
    maps: &[
        "Config.Labels",
        "Config.ExposedPorts",
        "Config.Volumes",
        "HostConfig.PortBindings",
        "HostConfig.LogConfig.Config",
        "HostConfig.Tmpfs",
        "HostConfig.Sysctls",
        "HostConfig.StorageOpt",
        "HostConfig.Annotations",
        "GraphDriver.Data",
        "NetworkSettings.Ports",
        "NetworkSettings.Networks",
        "NetworkSettings.Networks.*.DriverOpts",
    ],
    lists: &[
        "Args",
        "ExecIDs",
        "Mounts",
        "Config.Cmd",
        "Config.Entrypoint",
        "Config.Env",
        "Config.OnBuild",
        "Config.Shell",
        "HostConfig.Binds",
        "HostConfig.CapAdd",
        "HostConfig.CapDrop",
        "HostConfig.ConsoleSize",
        "HostConfig.Dns",
        "HostConfig.DnsOptions",
        "HostConfig.DnsSearch",
        "HostConfig.ExtraHosts",
        "HostConfig.GroupAdd",
        "HostConfig.Links",
        "HostConfig.SecurityOpt",
        "HostConfig.VolumesFrom",
        "HostConfig.BlkioWeightDevice",
        "HostConfig.BlkioDeviceReadBps",
        "HostConfig.BlkioDeviceWriteBps",
        "HostConfig.BlkioDeviceReadIOps",
        "HostConfig.BlkioDeviceWriteIOps",
        "HostConfig.Devices",
        "HostConfig.DeviceCgroupRules",
        "HostConfig.DeviceRequests",
        "HostConfig.Ulimits",
        "HostConfig.Mounts",
        "HostConfig.MaskedPaths",
        "HostConfig.ReadonlyPaths",
        "NetworkSettings.Ports.*",
        "NetworkSettings.SecondaryIPAddresses",
        "NetworkSettings.SecondaryIPv6Addresses",
        "NetworkSettings.Networks.*.Aliases",
        "NetworkSettings.Networks.*.Links",
        "NetworkSettings.Networks.*.DNSNames",
        "NetworkSettings.Networks.*.IPAMConfig.LinkLocalIPs",
        "State.Health.Log",
    ],
};

/// `image inspect` (`types.ImageInspect`).
pub static IMAGE: Schema = Schema {
    type_name: None,
    maps: &[
        "Config.Labels",
        "Config.ExposedPorts",
        "Config.Volumes",
        "ContainerConfig.Labels",
        "ContainerConfig.ExposedPorts",
        "ContainerConfig.Volumes",
        "GraphDriver.Data",
    ],
    lists: &[
        "RepoTags",
        "RepoDigests",
        "Config.Cmd",
        "Config.Entrypoint",
        "Config.Env",
        "Config.OnBuild",
        "Config.Shell",
        "ContainerConfig.Cmd",
        "ContainerConfig.Entrypoint",
        "ContainerConfig.Env",
        "RootFS.Layers",
    ],
};

/// `network inspect` (`network.Inspect`).
pub static NETWORK: Schema = Schema {
    type_name: None,
    maps: &[
        "IPAM.Options",
        "IPAM.Config.*.AuxiliaryAddresses",
        "Containers",
        "Options",
        "Labels",
        "CNI.Config",
    ],
    lists: &["IPAM.Config", "Peers"],
};

/// `volume inspect` (`volume.Volume`).
pub static VOLUME: Schema = Schema {
    type_name: None,
    maps: &["Labels", "Options", "Status"],
    lists: &[],
};

/// `version` (the CLI's `versionInfo`: `Client` and `Server`).
pub static VERSION: Schema = Schema {
    type_name: None,
    maps: &["Server.Components.*.Details"],
    lists: &["Server.Components"],
};

/// `info` (`system.Info` with the CLI's `ClientInfo`).
pub static INFO: Schema = Schema {
    type_name: None,
    maps: &["Runtimes"],
    lists: &[
        "Labels",
        "SecurityOptions",
        "Warnings",
        "DriverStatus",
        "Plugins.Volume",
        "Plugins.Network",
        "Plugins.Log",
        "ClientInfo.Plugins",
        "CDISpecDirs",
    ],
};
