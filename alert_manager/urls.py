from django.urls import path

from alert_manager import views

app_name = "alert_manager"

urlpatterns = [
    path("", views.event_list, name="event_list"),
    path("<int:pk>/", views.event_detail, name="event_detail"),
    path("<int:pk>/tiles.png", views.event_tiles_png, name="event_tiles_png"),
    path("<int:pk>/live/", views.event_live, name="event_live"),
    path("packets/<int:pk>/", views.alert_detail, name="alert_detail"),
    path("send-test/", views.send_test_packet, name="send_test"),
    path("send-test/kafka/", views.send_test_kafka, name="send_test_kafka"),
    path("streams/", views.streams, name="streams"),
    path("streams/topics/", views.streams_topics, name="streams_topics"),
    path("strategies/", views.strategy_list, name="strategy_list"),
    path("strategies/<int:pk>/switch/", views.strategy_switch, name="strategy_switch"),
    path("strategies/<int:pk>/template/", views.strategy_template_edit, name="strategy_template"),
]
