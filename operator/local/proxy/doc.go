// Package proxy is the traffic layer of tandem's embedded local platform: the loopback
// counterparts of the AWS parts that decide where a request or a connection goes.
//
//   - Router plays one region's Application Load Balancer listener: path rules pick a
//     service, each service has a blue and a green target group with weights, a header
//     rule pins test traffic to one color, targets are health checked actively and
//     ejected passively, and every target group keeps request, 5xx and latency figures
//     the deploy engine analyses.
//   - FrontDoor plays the Route 53 failover records: it forwards to the active region's
//     Router, can be fenced (the mandatory routing fence of a failover) and can delay a
//     switch by a DNS TTL so local recovery times are not better than AWS would allow.
//   - TCPEndpoint plays the DNS name of an RDS or ElastiCache cluster: a stable address
//     whose backend moves on failover.
//
// The blue/green deploy engine must shift traffic without a single failed client request,
// so the Router replays a request on another target when the failed attempt certainly
// never reached the application (the connection could not be made, or the target had
// closed the pooled connection), or when the request is replayable (a safe method or an
// idempotency key) and the connection broke before any answer. It decides a request's
// color and counts it in flight under one lock, which is what makes Drain exact.
package proxy
