//! rtnetlink requests made in-process (no `ip` process): a blocking `NETLINK_ROUTE` socket
//! bound to one network namespace, and the few link/address/route requests pod networking
//! needs, each acknowledged by the kernel before the next one is sent.
//!
//! A netlink socket belongs to the network namespace of the thread that created it, for its
//! whole life; [`RtnlSocket::open`] creates it on a thread that joined the wanted namespace
//! ([`run_in_netns`]).

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;
use std::time::Duration;

use netlink_packet_core::{
    DecodeError, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST, NLMSG_DONE,
    NLMSG_ERROR, NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, Parseable,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoBridge, InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoVeth, LinkAttribute,
    LinkExtentMask, LinkFlags, LinkHeader, LinkInfo, LinkMessage, LinkMessageBuffer,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use nix::errno::Errno;
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::TimeVal;

use crate::link::LinkError;
use crate::ns::run_in_netns;

/// `RTM_GETLINK` for the link called `name`, without statistics.
fn get_link(name: &str) -> RouteNetlinkMessage {
    let mut message = LinkMessage::default();
    message.attributes.push(LinkAttribute::IfName(name.to_owned()));
    message
        .attributes
        .push(LinkAttribute::ExtMask(vec![LinkExtentMask::Vf, LinkExtentMask::SkipStats]));
    RouteNetlinkMessage::GetLink(message)
}

/// The message type of a link description (`linux/rtnetlink.h`).
const RTM_NEWLINK: u16 = 16;

/// A failed netlink request (or socket operation), with what was asked and where.
#[derive(Debug, thiserror::Error)]
#[error("netlink: {request} (netns {netns}): {source}")]
pub struct NetlinkError {
    pub request: String,
    /// The netns file, or "current".
    pub netns: String,
    #[source]
    pub source: io::Error,
}

impl NetlinkError {
    /// The kernel's errno, if the request was refused with one.
    pub fn errno(&self) -> Option<Errno> {
        self.source.raw_os_error().map(Errno::from_raw)
    }
}

/// A `NETLINK_ROUTE` socket in one network namespace. Requests are sequential.
#[derive(Debug)]
pub struct RtnlSocket {
    socket: Socket,
    sequence: u32,
    netns: String,
}

fn new_socket(timeout: Duration) -> io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    // The kernel answers synchronously; the deadline only guards against the unexpected.
    let timeout = TimeVal::new(
        i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
        i64::from(timeout.subsec_micros()),
    );
    setsockopt(&socket.as_fd(), sockopt::ReceiveTimeout, &timeout).map_err(io::Error::from)?;
    Ok(socket)
}

impl RtnlSocket {
    /// Opens a socket in the netns held by `netns` (None: the current thread's).
    pub fn open(netns: Option<&Path>, timeout: Duration) -> Result<Self, LinkError> {
        let name = netns.map_or_else(|| "current".to_owned(), |p| p.display().to_string());
        let socket = match netns {
            None => new_socket(timeout),
            Some(path) => run_in_netns(Some(path), || new_socket(timeout))?,
        };
        let socket = socket.map_err(|source| NetlinkError {
            request: "opening a NETLINK_ROUTE socket".into(),
            netns: name.clone(),
            source,
        })?;
        Ok(RtnlSocket { socket, sequence: 0, netns: name })
    }

    fn error(&self, request: &str, source: io::Error) -> NetlinkError {
        NetlinkError { request: request.to_owned(), netns: self.netns.clone(), source }
    }

    /// Sends one request with `NLM_F_ACK` (plus `flags`) and returns the messages answered
    /// before the acknowledgement; a refusal is the errno the kernel gave.
    fn request(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
        what: &str,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        self.request_with(message, flags, what, |bytes| {
            match NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes)?.payload {
                NetlinkPayload::InnerMessage(inner) => Ok(Some(inner)),
                _ => Ok(None),
            }
        })
    }

    /// [`RtnlSocket::request`] with the answered messages decoded by `decode` (from the
    /// whole netlink message, header included; None skips one). Lets a caller read only
    /// what it needs: netlink-packet-route's full parse of a bridge link formats the whole
    /// attribute payload for every attribute, which made looking up the bridge's index
    /// the costliest step of a pod's network setup.
    fn request_with<T>(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
        what: &str,
        decode: impl Fn(&[u8]) -> Result<Option<T>, DecodeError>,
    ) -> Result<Vec<T>, NetlinkError> {
        self.sequence = self.sequence.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = self.sequence;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
        packet.finalize();
        let mut buf = vec![0; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket.send(&buf, 0).map_err(|e| self.error(what, e))?;
        let invalid = |e: DecodeError| io::Error::new(io::ErrorKind::InvalidData, e.to_string());
        let mut replies = Vec::new();
        loop {
            let (data, _) = self.socket.recv_from_full().map_err(|e| self.error(what, e))?;
            let mut offset = 0;
            while offset < data.len() {
                let reply = NetlinkBuffer::new_checked(&data[offset..])
                    .map_err(|e| self.error(what, invalid(e)))?;
                let length = usize::try_from(reply.length()).unwrap_or(usize::MAX);
                if length == 0 {
                    break;
                }
                let bytes = &data[offset..(offset + length).min(data.len())];
                offset = offset.saturating_add(length.next_multiple_of(4));
                if reply.sequence_number() != self.sequence {
                    continue;
                }
                match reply.message_type() {
                    NLMSG_ERROR => {
                        let message = NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes)
                            .map_err(|e| self.error(what, invalid(e)))?;
                        match message.payload {
                            NetlinkPayload::Error(err) if err.code.is_none() => return Ok(replies),
                            NetlinkPayload::Error(err) => return Err(self.error(what, err.to_io())),
                            _ => return Err(self.error(what, invalid("bad error message".into()))),
                        }
                    }
                    NLMSG_DONE => return Ok(replies),
                    _ => replies.extend(decode(bytes).map_err(|e| self.error(what, invalid(e)))?),
                }
            }
        }
    }

    /// The link called `name`, or None if there is none.
    pub fn link(&mut self, name: &str) -> Result<Option<LinkMessage>, NetlinkError> {
        match self.request(get_link(name), 0, &format!("get link {name}")) {
            Ok(replies) => Ok(replies.into_iter().find_map(|reply| match reply {
                RouteNetlinkMessage::NewLink(link) => Some(link),
                _ => None,
            })),
            Err(err) if err.errno() == Some(Errno::ENODEV) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// The index of the link called `name`; a missing link is ENODEV. Reads the link
    /// message's header only (see [`RtnlSocket::request_with`]).
    pub fn link_index(&mut self, name: &str) -> Result<u32, NetlinkError> {
        let what = format!("get link {name}");
        let indexes = self.request_with(get_link(name), 0, &what, |bytes| {
            let reply = NetlinkBuffer::new_checked(bytes)?;
            if reply.message_type() != RTM_NEWLINK {
                return Ok(None);
            }
            let link = LinkMessageBuffer::new_checked(reply.payload())?;
            Ok(Some(LinkHeader::parse(&link)?.index))
        })?;
        indexes
            .first()
            .copied()
            .ok_or_else(|| self.error(&what, io::Error::from_raw_os_error(Errno::ENODEV as i32)))
    }

    /// `ip link add name NAME type bridge forward_delay 0`.
    pub fn add_bridge(&mut self, name: &str) -> Result<(), NetlinkError> {
        let mut message = LinkMessage::default();
        message.attributes.push(LinkAttribute::IfName(name.to_owned()));
        message.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Bridge),
            LinkInfo::Data(InfoData::Bridge(vec![InfoBridge::ForwardDelay(0)])),
        ]));
        let what = format!("add bridge {name}");
        self.request(RouteNetlinkMessage::NewLink(message), NLM_F_CREATE | NLM_F_EXCL, &what)?;
        Ok(())
    }

    /// `ip link add name HOST mtu MTU type veth peer name PEER mtu MTU netns PEER_NETNS`.
    pub fn add_veth(
        &mut self,
        host: &str,
        peer: &str,
        mtu: u32,
        peer_netns: &impl AsRawFd,
    ) -> Result<(), NetlinkError> {
        let mut peer_message = LinkMessage::default();
        peer_message.attributes.push(LinkAttribute::IfName(peer.to_owned()));
        peer_message.attributes.push(LinkAttribute::Mtu(mtu));
        peer_message.attributes.push(LinkAttribute::NetNsFd(peer_netns.as_raw_fd()));
        let mut message = LinkMessage::default();
        message.attributes.push(LinkAttribute::IfName(host.to_owned()));
        message.attributes.push(LinkAttribute::Mtu(mtu));
        message.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_message))),
        ]));
        let what = format!("add veth {host} (peer {peer} in another netns)");
        self.request(RouteNetlinkMessage::NewLink(message), NLM_F_CREATE | NLM_F_EXCL, &what)?;
        Ok(())
    }

    /// Changes an existing link (found by name) with `attributes` and `flags`/`change`.
    fn set_link(
        &mut self,
        name: &str,
        flags: LinkFlags,
        change: LinkFlags,
        attributes: Vec<LinkAttribute>,
        what: &str,
    ) -> Result<(), NetlinkError> {
        let mut message = LinkMessage::default();
        message.header.flags = flags;
        message.header.change_mask = change;
        message.attributes.push(LinkAttribute::IfName(name.to_owned()));
        message.attributes.extend(attributes);
        self.request(RouteNetlinkMessage::NewLink(message), 0, what)?;
        Ok(())
    }

    /// `ip link set dev NAME up`.
    pub fn set_up(&mut self, name: &str) -> Result<(), NetlinkError> {
        let what = format!("set link {name} up");
        self.set_link(name, LinkFlags::Up, LinkFlags::Up, Vec::new(), &what)
    }

    /// `ip link set dev NAME mtu MTU`.
    pub fn set_mtu(&mut self, name: &str, mtu: u32) -> Result<(), NetlinkError> {
        let what = format!("set link {name} mtu {mtu}");
        self.set_link(
            name,
            LinkFlags::empty(),
            LinkFlags::empty(),
            vec![LinkAttribute::Mtu(mtu)],
            &what,
        )
    }

    /// `ip link set dev NAME master MASTER`.
    pub fn set_master(&mut self, name: &str, master: &str) -> Result<(), NetlinkError> {
        let index = self.link_index(master)?;
        let what = format!("set link {name} master {master}");
        let attributes = vec![LinkAttribute::Controller(index)];
        self.set_link(name, LinkFlags::empty(), LinkFlags::empty(), attributes, &what)
    }

    /// `ip link set dev NAME type bridge_slave hairpin on`: the bridge port option, as
    /// `IFLA_LINKINFO { IFLA_INFO_SLAVE_DATA { IFLA_BRPORT_MODE 1 } }` (the kernel applies
    /// port data through the master's ops, so no kind is needed).
    pub fn set_bridge_port_hairpin(&mut self, name: &str) -> Result<(), NetlinkError> {
        let what = format!("set bridge port {name} hairpin on");
        let attributes = vec![hairpin_on()];
        self.set_link(name, LinkFlags::empty(), LinkFlags::empty(), attributes, &what)
    }

    /// `ip link del dev NAME`; Ok(false) if there was no such link.
    pub fn delete_link(&mut self, name: &str) -> Result<bool, NetlinkError> {
        let mut message = LinkMessage::default();
        message.attributes.push(LinkAttribute::IfName(name.to_owned()));
        match self.request(RouteNetlinkMessage::DelLink(message), 0, &format!("delete link {name}"))
        {
            Ok(_) => Ok(true),
            Err(err) if err.errno() == Some(Errno::ENODEV) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// `ip addr add IP/LEN dev INDEX` (`replace`: `ip addr replace`).
    pub fn add_address(
        &mut self,
        index: u32,
        ip: Ipv4Addr,
        prefix_len: u8,
        replace: bool,
    ) -> Result<(), NetlinkError> {
        let mut message = AddressMessage::default();
        message.header.family = AddressFamily::Inet;
        message.header.prefix_len = prefix_len;
        message.header.index = index;
        message.attributes.push(AddressAttribute::Local(IpAddr::V4(ip)));
        message.attributes.push(AddressAttribute::Address(IpAddr::V4(ip)));
        let (flags, verb) = if replace { (NLM_F_REPLACE, "replace") } else { (NLM_F_EXCL, "add") };
        let what = format!("addr {verb} {ip}/{prefix_len} dev #{index}");
        self.request(RouteNetlinkMessage::NewAddress(message), NLM_F_CREATE | flags, &what)?;
        Ok(())
    }

    /// `ip route add default via GATEWAY dev INDEX` (main table, proto boot).
    pub fn add_default_route(&mut self, index: u32, gateway: Ipv4Addr) -> Result<(), NetlinkError> {
        let mut message = RouteMessage::default();
        message.header.address_family = AddressFamily::Inet;
        message.header.table = RouteHeader::RT_TABLE_MAIN;
        message.header.protocol = RouteProtocol::Boot;
        message.header.scope = RouteScope::Universe;
        message.header.kind = RouteType::Unicast;
        message.attributes.push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        message.attributes.push(RouteAttribute::Oif(index));
        let what = format!("route add default via {gateway} dev #{index}");
        self.request(RouteNetlinkMessage::NewRoute(message), NLM_F_CREATE | NLM_F_EXCL, &what)?;
        Ok(())
    }
}

/// `IFLA_LINKINFO { IFLA_INFO_SLAVE_DATA { IFLA_BRPORT_MODE 1 } }`.
fn hairpin_on() -> LinkAttribute {
    LinkAttribute::LinkInfo(vec![LinkInfo::PortData(InfoPortData::BridgePort(vec![
        InfoBridgePort::HairpinMode(true),
    ]))])
}

/// The `IFLA_INFO_KIND` of a link ("" if it has none).
pub fn link_kind(link: &LinkMessage) -> String {
    link.attributes
        .iter()
        .find_map(|attribute| match attribute {
            LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|info| match info {
                LinkInfo::Kind(kind) => Some(kind.to_string()),
                _ => None,
            }),
            _ => None,
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::Emitable;
    use netlink_packet_route::link::{InfoKind, LinkInfo};

    use super::*;

    #[test]
    fn hairpin_is_the_bridge_port_mode_in_slave_data_as_ip_sends_it() {
        let attribute = hairpin_on();
        let mut buf = vec![0; attribute.buffer_len()];
        attribute.emit(&mut buf);
        // IFLA_LINKINFO (18, nested), holding IFLA_INFO_SLAVE_DATA (5) holding
        // IFLA_BRPORT_MODE (4) = 1: the same inner bytes as `ip link set dev X type
        // bridge_slave hairpin on` (seen with strace).
        assert_eq!(buf.len(), 16, "{buf:?}");
        assert_eq!(u16::from_ne_bytes([buf[2], buf[3]]) & 0x3fff, 18, "{buf:?}");
        assert_eq!(&buf[4..], &[12, 0, 5, 0, 5, 0, 4, 0, 1, 0, 0, 0], "{buf:?}");
    }

    #[test]
    fn link_kind_reads_info_kind() {
        let mut link = LinkMessage::default();
        assert_eq!(link_kind(&link), "");
        link.attributes.push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]));
        assert_eq!(link_kind(&link), "bridge");
        link.attributes = vec![LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Veth)])];
        assert_eq!(link_kind(&link), "veth");
    }

    #[test]
    fn errors_name_the_request_the_netns_and_the_errno() {
        let err = NetlinkError {
            request: "delete link x".into(),
            netns: "/run/netns/p".into(),
            source: io::Error::from_raw_os_error(Errno::EEXIST as i32),
        };
        assert_eq!(err.errno(), Some(Errno::EEXIST));
        let text = err.to_string();
        assert!(text.starts_with("netlink: delete link x (netns /run/netns/p): "), "{text}");
        assert!(text.contains("File exists"), "{text}");
    }
}
